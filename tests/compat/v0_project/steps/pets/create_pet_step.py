# A Motia 0.x API step: `type: "api"`, `emits`, `(req, context)` and `context.emit`.
from pydantic import BaseModel


class NewPet(BaseModel):
    name: str
    species: str


class PetOut(BaseModel):
    id: str
    name: str


config = {
    "type": "api",
    "name": "CreatePet",
    "description": "Adopt a pet into the shelter",
    "path": "/pets",
    "method": "POST",
    "bodySchema": NewPet.model_json_schema(),
    "responseSchema": {201: PetOut.model_json_schema()},
    "emits": [{"topic": "pet.adopted", "label": "Pet adopted"}],
    "virtualEmits": ["shelter.notified"],
    "flows": ["shelter"],
}


async def handler(req, context):
    body = req.get("body", {})
    pet_id = body["name"].lower()
    pet = {"id": pet_id, "name": body["name"], "species": body["species"]}
    await context.state.set("pets", pet_id, pet)
    context.logger.info("Pet adopted", {"petId": pet_id})
    await context.emit({"topic": "pet.adopted", "data": pet})
    return {"status": 201, "body": {**pet, "traceId": context.trace_id}}
