"""transferlab: what transfers when a fine-tuned model learns a capability under one propensity?"""

__version__ = "0.1.0"
