FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY nudge nudge
COPY domain domain
COPY store store
COPY workflows workflows
COPY activities activities
COPY channels channels
COPY api api
COPY dashboards dashboards
COPY bench bench
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["nudge", "api"]
