"""Audio the zoo learns from: test signals (signals), the built-in virtual analog devices (devices), loudness."""
