"""Application layer: the study pipeline (stages as content-addressed runs), presets, the finish pipeline."""
