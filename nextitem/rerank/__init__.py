"""Stage 2: candidate sets between the stages and the rerankers that order them."""
