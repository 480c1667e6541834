"""ttsdoctor: a linter and doctor for text-to-speech model directories."""

__version__ = "0.1.0"
