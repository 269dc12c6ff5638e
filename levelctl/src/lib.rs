//! levelctl: the toolstack side of CPU levelling.
