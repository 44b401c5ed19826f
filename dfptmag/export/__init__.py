"""Writers of real-space fields for VESTA, XCrySDen, ParaView and other tools."""

# snapshot output formats (figures, grids, raw amplitudes); kept here, free of heavy imports,
# so that the CLI can list them without loading h5py/scipy at start-up
FORMATS = ("png", "pdf", "xsf", "vtk", "cube", "h5")
