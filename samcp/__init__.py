"""SAM-CP: SAM patches merged and labeled by composable prompts."""
