"""Writers of real-space fields for VESTA, XCrySDen, ParaView and other tools."""
