"""Official ODISE checkpoints -> openseg."""
