# A Motia 0.x API step reading a whole group of state with `context.state.get_group`.
config = {
    "type": "api",
    "name": "ListPets",
    "path": "/pets",
    "method": "GET",
    "emits": [],
    "flows": ["shelter"],
}


async def handler(req, context):
    pets = await context.state.get_group("pets")
    return {"status": 200, "body": {"pets": sorted(pet["name"] for pet in pets)}}
