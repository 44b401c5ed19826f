"""Result files and the objects that read them back.

- ``qfile``      dfptmag.h5 (one group per q): schema, writer, dict reader
- ``bandsfile``  bands.h5: schema, writer, reader
- ``objects``    Result / QPoint / Modes / Bands: what ``dfptmag.load`` returns
- ``report``     the text tables the command line prints
- ``_h5``        shared HDF5 helpers (datasets with units, the structure block)
"""
