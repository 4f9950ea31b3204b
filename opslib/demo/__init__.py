"""Bundled demo target: synthetic worlds and the replay captures generated from them."""
