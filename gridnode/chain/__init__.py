"""gridnode.chain"""
