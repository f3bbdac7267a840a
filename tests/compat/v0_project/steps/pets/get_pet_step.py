# A Motia 0.x API step with a blocking (`def`) handler and a path parameter.
config = {
    "type": "api",
    "name": "GetPet",
    "path": "/pets/:petId",
    "method": "GET",
    "emits": [],
    "flows": ["shelter"],
}


def handler(req, context):
    pet = context.state.get("pets", req.path_params["petId"])
    if pet is None:
        return {"status": 404, "body": {"error": "no such pet"}}
    return {"status": 200, "body": pet}
