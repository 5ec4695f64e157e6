"""Measuring answer quality: question sets (dataset.py), matching rules (matching.py), per-question
records and metrics (metrics.py), reports (report.py), the regression guard (compare.py), machine noise
on purpose (noise.py), the answer reader's training (reader_data.py, train_reader.py) and the
`rag eval` command (run.py)."""
