"""gridnode: the edge gateway of the GridTokenX peer-to-peer energy market."""

__version__ = "0.1.0"
