"""What both E-MIM modules share as clients of the engine: starting it and reading its JSON events (`process`), one
run seen from a Logic (`job`), the error shown to users (`errors`), translation (`i18n`), the slicer-core
application for batch runs and tests (`headless`), the dependency installer (`install`), the sample case
(`sample_data`), and for the module files only, the panels' parameter-node lifecycle (`lifecycle`) and the
optional-path connector for ctkPathLineEdit (`path_connector`, which imports ctk). The rest is Qt-free except
`install`'s dialog; installed beside the module files, like the `emim` engine.
"""
