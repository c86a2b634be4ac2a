"""blastcell: reproducible classification of blood-smear cell images (ALL blasts)."""
