"""The model: the classifier around a backbone (network), timm backbones and their offline weights
(backbones), and the losses (losses). Imports errors and labels; never the config, data or engine."""
