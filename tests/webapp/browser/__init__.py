"""The web app driven by Debian's chromium through Playwright."""
