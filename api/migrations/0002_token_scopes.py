from django.db import migrations, models


def scopes_for_existing_tokens(apps, schema_editor):
    """Tokens minted before scopes could do everything their owner could: they keep it. Every
    one gets read and write; those of staff users also staff (the staff API answered them)."""
    Token = apps.get_model("api", "PersonalAccessToken")
    Token.objects.update(scopes="read write")
    Token.objects.filter(user__is_staff=True).update(scopes="read write staff")


class Migration(migrations.Migration):
    dependencies = [
        ("api", "0001_initial"),
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="personalaccesstoken",
            name="scopes",
            field=models.CharField(default="read", max_length=32, verbose_name="scopes"),
        ),
        migrations.RunPython(scopes_for_existing_tokens, migrations.RunPython.noop),
    ]
