"""Datasets: raw formats -> one canonical dataset folder with the leave-one-out split."""
