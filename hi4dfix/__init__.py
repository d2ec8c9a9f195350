"""hi4dfix: DiFix fine-tuning study on Hi4D scenes."""
