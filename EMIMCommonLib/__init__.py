"""What both E-MIM modules share as clients of the engine: starting it and reading its JSON events (`process`), one
run seen from a Logic (`job`), the error shown to users (`errors`), translation (`i18n`), the slicer-core
application for batch runs and tests (`headless`), the dependency installer (`install`) and the sample case
(`sample_data`). Qt-free except `install`'s dialog; installed beside the module files, like the `emim` engine.
"""
