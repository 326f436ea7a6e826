"""``make reproduce``: the paper's table from raw data to the comparison, one resumable stage after another."""
