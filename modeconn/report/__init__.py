"""`modeconn report`: the page for anyone's runs — gather (compute or read back the results), then page (draw them)."""
