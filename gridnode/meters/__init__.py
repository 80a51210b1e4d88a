"""gridnode.meters"""
