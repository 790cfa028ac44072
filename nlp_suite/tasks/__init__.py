"""One module per task (sentiment, reply, recommend); each is selected by a conf/task/*.yaml `_target_`."""
