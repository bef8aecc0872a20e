"""The model: the classifier around a backbone and its Output (network), timm backbones, their offline weights and
the layers Grad-CAM reads (backbones), the age heads (age) and the losses (losses). Imports errors, labels and the
run's checkpoint reader; never the config, data or engine."""
