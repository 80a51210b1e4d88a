"""gridnode.outbox"""
