"""Backdoor detectors behind one interface: our method and the baselines (MM-BD, Neural Cleanse)."""
