# telnyx-outbound: docker build -t telnyx-outbound .
#   docker run --env-file .env -p 7860:7860 -v telnyx-calls:/app/data telnyx-outbound
FROM denoland/deno:2.9.6

WORKDIR /app

# Dependencies get their own layer: editing the source does not download them again.
COPY deno.json deno.lock ./
RUN deno install --frozen

COPY main.ts ./
COPY src/ ./src/
RUN deno cache --frozen main.ts

# Call records live in KV at ./data/calls.sqlite3 unless KV_PATH says otherwise: a volume the
# unprivileged `deno` user (shipped with the official image) can write, kept across containers.
RUN mkdir -p /app/data && chown deno:deno /app/data
VOLUME /app/data
USER deno

ENV PORT=7860 HOST=0.0.0.0
EXPOSE 7860
CMD ["task", "start"]
