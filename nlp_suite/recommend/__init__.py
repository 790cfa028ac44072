"""Serving recommendations from SQL: batch top-K runs per user (`batch.recommend_all`), the latest complete run
for readers (`batch.latest_recommendations`) and cold-start reach of a new item (`batch.users_for_new_item`)."""
