"""gridnode.settlement"""
