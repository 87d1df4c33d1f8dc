"""Networks: the shared-weight multi-modal ViT encoder, the light MIM decoder, UNETR and classification heads."""
