# One image for the api and worker services of docker-compose.yml; the command picks the role.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TRAINYARD_HOME=/data
WORKDIR /app
COPY . .
RUN pip install . && mkdir -p /data
CMD ["trainyard", "--help"]
