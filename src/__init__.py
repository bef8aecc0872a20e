"""maskcls: face-mask-status classification, grouped by job. Imports run downward only:

    errors, labels, seeds, metrics    the shared vocabulary and the one error base
    config/                           the settings: schema, parsing, policy
    run/                              the run folder and what is written into it
    data/                             images, tables, datasets, transforms, cache, loaders
    model/                            the network, backbones and losses
    engine/                           builders, the trainer, the step, the forward pass
    predict/                          inference and pseudo labels
    sweep/                            Optuna sweeps: the sweep file, the study storage, the worker
    insight/                          OOF views, galleries, label issues, the run comparison
"""
