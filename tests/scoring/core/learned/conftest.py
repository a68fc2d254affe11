"""Keep every Hugging Face library offline in these tests: nothing may come from a hub."""

import os

# Read by huggingface_hub, transformers and datasets when they are first imported, which happens after this.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_name] = "1"
