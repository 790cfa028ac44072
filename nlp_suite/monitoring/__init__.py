"""Financial opinion monitoring: batch sentiment scoring and negative-spike alerts."""
