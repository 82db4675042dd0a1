"""A fake Hugging Face Hub behind huggingface_hub's HTTP client: only the transport is
replaced (httpx MockTransport through huggingface_hub.set_client_factory), so every call
above it is huggingface_hub's own code. It records each request and the files of each
commit (every file answered "regular", so their bytes travel inside the commit)."""

import base64
import json
from dataclasses import dataclass, field

import httpx2
from huggingface_hub import set_client_factory


@dataclass
class FakeHub:
    requests: list[tuple[str, str, dict]] = field(default_factory=list)
    """(method, path, headers) of every request."""
    repos: list[dict] = field(default_factory=list)
    """The body of each create-repo request."""
    commits: list[dict[str, bytes]] = field(default_factory=list)
    """Each commit's files: path in the repository -> bytes."""
    refuse: int | None = None
    """A status to answer every request with (a Hub that refuses)."""

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.requests.append((request.method, path, dict(request.headers)))
        if self.refuse is not None:
            return httpx2.Response(self.refuse, json={"error": "refused by the fake hub"})
        if path == "/api/repos/create":
            self.repos.append(json.loads(request.content))
            return httpx2.Response(200, json={"url": "https://huggingface.co/org/name"})
        if path.endswith("/validate-yaml"):
            return httpx2.Response(200, json={})
        if "/preupload/" in path:
            files = json.loads(request.content)["files"]
            return httpx2.Response(
                200,
                json={
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                    ]
                },
            )
        if "/commit/" in path:
            lines = [json.loads(line) for line in request.content.splitlines() if line.strip()]
            self.commits.append(
                {
                    item["value"]["path"]: base64.b64decode(item["value"]["content"])
                    for item in lines
                    if item["key"] == "file"
                }
            )
            return httpx2.Response(
                200, json={"commitUrl": "https://huggingface.co/org/name/commit/abc", "commitOid": "abc"}
            )
        return httpx2.Response(404, json={"error": f"no fake for {request.method} {path}"})

    def install(self) -> None:
        set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(self.handle)))
