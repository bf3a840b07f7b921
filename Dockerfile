# labelsieve's embedded runtime and modules in one image. Build: docker build -t labelsieve .
# Run:   docker run --rm -p 8080:8080 labelsieve            (the camera example)
#        docker run --rm -p 8080:8080 -v $PWD/my.json:/app/configs/my.json -e LABELSIEVE_API_KEY=... labelsieve \
#            labelsieve run configs/my.json --host 0.0.0.0
# Weights are not baked in: mount a Hugging Face cache (-v ~/.cache/huggingface:/root/.cache/huggingface) or a local
# model directory named in the config.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md setup.sh ./
COPY src ./src
RUN pip install --no-cache-dir -e ".[label,train]"
COPY modules ./modules
COPY configs ./configs
COPY meta.json ./
ENV LABELSIEVE_PYTHON=/usr/local/bin/python \
    LABELSIEVE_HOME=/data \
    YOLO_OFFLINE=1 \
    YOLO_AUTOINSTALL=0
VOLUME /data
EXPOSE 8080
# Inside a container the listener must bind all interfaces for -p to reach it; set LABELSIEVE_API_KEY when exposed.
CMD ["labelsieve", "run", "configs/camera.json", "--host", "0.0.0.0", "--port", "8080"]
