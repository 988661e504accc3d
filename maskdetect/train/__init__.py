"""Training stage: pipeline config (templates, model registry, configure), zoo checkpoints, train, evaluate,
export. Import from the modules: ``from maskdetect.train.train import train``."""
