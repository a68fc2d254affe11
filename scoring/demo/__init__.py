"""Demo tasks and patches for `manage.py load_demo`; see manifest.json."""
