"""Reference GridTokenX programs (C → SBF) and the localnet that runs them."""
