"""The Kubernetes API, as the operator and the agent use it: the adapter (``api``) and the API
server's health as the operator sees it (``apihealth``)."""
