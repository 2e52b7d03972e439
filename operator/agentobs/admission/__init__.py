"""The admission half: the mutating webhook that instruments agent pods.

`injection` is the pure contract (which resource selects a pod, and what it adds); `server` is
the HTTPS endpoint that answers admission reviews with a JSON patch and never blocks a pod it
cannot help; `webhook` keeps the webhook's CA, serving certificate and configuration; `coverage`
counts the selected pods that lack the current injection and rolls them when asked.
"""
