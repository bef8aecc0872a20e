"""Write finished runs as one ONNX graph and its description, after a parity check against PyTorch.

    python export.py --run N --out DIR [--checkpoint best_f1] [--tta flip] [--data_dir D]
    python export.py --runs N1 N2 --out DIR          # one graph: runs of the same input size
"""
import sys

from src.config.parsing import parse_or_exit
from src.config.schema import ExportConfig
from src.errors import fail_cleanly


def main(argv=None) -> int:
    cfg = parse_or_exit(argv, ExportConfig)
    with fail_cleanly():
        from src.predict.export import export

        export(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
