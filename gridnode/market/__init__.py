"""gridnode.market: tokenized generation, orders from policy, epoch clearing; the settlement
of matched trades is in gridnode.settlement."""
