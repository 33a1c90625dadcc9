from __future__ import annotations

import httpx

from tests.support import gql, sign_up


async def test_sign_up_then_me(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    body = await gql(client, "{ me { id email tier role } }", token=user.token)
    assert body["data"]["me"] == {
        "id": str(user.id),
        "email": user.email,
        "tier": "FREE",
        "role": "USER",
    }
