"""PaaS: node runtimes (aiodocker per Docker engine), scheduler, reconciler, health checks, app images."""
