"""OutputChunk.newlines: the "\\n" count of each chunk, so line numbers are summed without reading
the output. Existing chunks are counted once, in the database."""
from django.db import migrations, models
from django.db.models import F, Value
from django.db.models.functions import Length, Replace


def count_newlines(apps, schema_editor):
    chunk = apps.get_model("orchestration", "OutputChunk")
    chunk.objects.update(newlines=Length("text") - Length(Replace(F("text"), Value("\n"), Value(""))))


class Migration(migrations.Migration):

    dependencies = [
        ("orchestration", "0015_plan_draft_log"),
    ]

    operations = [
        migrations.AddField(
            model_name="outputchunk",
            name="newlines",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.RunPython(count_newlines, migrations.RunPython.noop),
    ]
