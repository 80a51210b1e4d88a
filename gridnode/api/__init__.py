"""gridnode.api"""
