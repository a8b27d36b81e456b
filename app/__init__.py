"""The deepz Streamlit app: router (main.py), state/caching (state.py), plot builders (plots.py)."""
