"""The contract's words in each language the customer's page speaks (en, it, ro, pl).

Clause 1 and the closing line say honestly where the key is: in a certified qualified
signature creation device (``pkcs11.qscd``) the customer's signatures are qualified
electronic signatures; otherwise (SoftHSM, an uncertified HSM) they are advanced
electronic signatures based on a qualified certificate, and the certificate says
QCP-n, not QCP-n-qscd.
"""

from __future__ import annotations

from dataclasses import dataclass

LANGUAGES = ("en", "it", "ro", "pl")


@dataclass(frozen=True)
class ContractText:
    title: str
    between: str
    """With ``{provider}``."""
    labels: tuple[str, ...]
    """Given names, surname, date of birth, nationality, document, e-mail, phone,
    certificate serial, identification."""
    conditions: str
    object_qscd: str
    object_no_qscd: str
    clauses: tuple[str, ...]
    """Clauses 2 to 7."""
    date: str
    signed_qscd: str
    signed_no_qscd: str
    page: str
    """With ``{title}``, ``{number}`` and ``{total}``."""
    document_title: str
    """The PDF's title, with ``{session}``."""


EN = ContractText(
    title="CONTRACT FOR A QUALIFIED ELECTRONIC SIGNATURE CERTIFICATE",
    between="Between {provider} (the Provider) and the Customer:",
    labels=(
        "Given names",
        "Surname",
        "Date of birth",
        "Nationality",
        "Identity document",
        "E-mail",
        "Mobile phone",
        "Certificate serial",
        "Identification",
    ),
    conditions="CONDITIONS OF SERVICE",
    object_qscd=(
        "1. Object. The Provider issues to the Customer a qualified certificate for electronic "
        "signatures (Regulation (EU) No 910/2014, eIDAS), whose private key the Provider keeps "
        "on the Customer's behalf in a qualified signature creation device, and which only the "
        "Customer can use, with their signature PIN and a one-time code sent to their mobile "
        "phone for each signature. Signatures made with it are qualified electronic signatures."
    ),
    object_no_qscd=(
        "1. Object. The Provider issues to the Customer a qualified certificate for electronic "
        "signatures (Regulation (EU) No 910/2014, eIDAS), whose private key the Provider keeps "
        "on the Customer's behalf in a hardware security module that is NOT a certified "
        "qualified signature creation device, and which only the Customer can use, with their "
        "signature PIN and a one-time code sent to their mobile phone for each signature. "
        "Signatures made with it are advanced electronic signatures based on a qualified "
        "certificate, not qualified electronic signatures."
    ),
    clauses=(
        "2. Identification. The Customer was identified by a live video call with an operator "
        "of the Provider, recorded and kept as evidence, on the date below. The Customer "
        "declares that the data in this contract are true and that the identity document "
        "shown is theirs.",
        "3. Signature PIN and codes. The Customer keeps the signature PIN secret, never writes "
        "it down near their phone, and never tells anyone the one-time codes, which the "
        "Provider will never ask for. Three wrong PINs lock the key; the PUK given at issuance "
        "unblocks it.",
        "4. Validity and revocation. The certificate is valid for three years unless revoked. "
        "The Customer asks for revocation at once if they suspect that anyone else knows their "
        "PIN or has their phone. A revoked certificate cannot be used again.",
        "5. Personal data. The Provider processes the Customer's personal data to identify "
        "them, to issue and manage the certificate, and to keep the evidence for the period the "
        "law requires (twenty years for qualified certificates, Italian CAD). The Customer has "
        "the rights of Articles 15 to 22 GDPR, within those obligations.",
        "6. Evidence. The Customer agrees that the recording of the identification, the checks "
        "made, the one-time code events (never the codes) and this signed contract are kept as "
        "evidence of the identification and of this agreement.",
        "7. Law and jurisdiction. This contract is governed by Italian law. The consumer's "
        "court has jurisdiction over any dispute.",
    ),
    date="Date",
    signed_qscd="Signed by the Customer with their qualified electronic signature.",
    signed_no_qscd=(
        "Signed by the Customer with an advanced electronic signature based on their "
        "qualified certificate."
    ),
    page="{title} - page {number} of {total}",
    document_title="Contract {session}",
)

IT = ContractText(
    title="CONTRATTO PER UN CERTIFICATO QUALIFICATO DI FIRMA ELETTRONICA",
    between="Tra {provider} (il Prestatore) e il Cliente:",
    labels=(
        "Nomi",
        "Cognome",
        "Data di nascita",
        "Cittadinanza",
        "Documento d'identità",
        "E-mail",
        "Cellulare",
        "Numero di serie",
        "Identificazione",
    ),
    conditions="CONDIZIONI DEL SERVIZIO",
    object_qscd=(
        "1. Oggetto. Il Prestatore rilascia al Cliente un certificato qualificato di firma "
        "elettronica (Regolamento (UE) n. 910/2014, eIDAS), la cui chiave privata il Prestatore "
        "custodisce per conto del Cliente in un dispositivo per la creazione di una firma "
        "qualificata, e che solo il Cliente può usare, con il proprio PIN di firma e un codice "
        "monouso inviato al suo cellulare per ogni firma. Le firme così apposte sono firme "
        "elettroniche qualificate."
    ),
    object_no_qscd=(
        "1. Oggetto. Il Prestatore rilascia al Cliente un certificato qualificato di firma "
        "elettronica (Regolamento (UE) n. 910/2014, eIDAS), la cui chiave privata il Prestatore "
        "custodisce per conto del Cliente in un modulo crittografico che NON è un dispositivo "
        "certificato per la creazione di una firma qualificata, e che solo il Cliente può "
        "usare, con il proprio PIN di firma e un codice monouso inviato al suo cellulare per "
        "ogni firma. Le firme così apposte sono firme elettroniche avanzate basate su un "
        "certificato qualificato, non firme elettroniche qualificate."
    ),
    clauses=(
        "2. Identificazione. Il Cliente è stato identificato con una videochiamata dal vivo "
        "con un operatore del Prestatore, registrata e conservata come prova, nella data "
        "indicata sotto. Il Cliente dichiara che i dati di questo contratto sono veri e che il "
        "documento d'identità mostrato è il suo.",
        "3. PIN di firma e codici. Il Cliente mantiene segreto il PIN di firma, non lo annota "
        "mai vicino al telefono e non comunica a nessuno i codici monouso, che il Prestatore "
        "non chiederà mai. Tre PIN errati bloccano la chiave; il PUK consegnato al rilascio la "
        "sblocca.",
        "4. Validità e revoca. Il certificato è valido tre anni salvo revoca. Il Cliente ne "
        "chiede subito la revoca se sospetta che altri conoscano il suo PIN o abbiano il suo "
        "telefono. Un certificato revocato non può più essere usato.",
        "5. Dati personali. Il Prestatore tratta i dati personali del Cliente per "
        "identificarlo, rilasciare e gestire il certificato e conservare le prove per il "
        "periodo previsto dalla legge (vent'anni per i certificati qualificati, CAD). Il "
        "Cliente ha i diritti degli articoli da 15 a 22 del GDPR, nei limiti di tali obblighi.",
        "6. Prove. Il Cliente accetta che la registrazione dell'identificazione, i controlli "
        "svolti, gli eventi dei codici monouso (mai i codici) e questo contratto firmato siano "
        "conservati come prova dell'identificazione e di questo accordo.",
        "7. Legge e foro. Questo contratto è regolato dalla legge italiana. Per ogni "
        "controversia è competente il foro del consumatore.",
    ),
    date="Data",
    signed_qscd="Firmato dal Cliente con la propria firma elettronica qualificata.",
    signed_no_qscd=(
        "Firmato dal Cliente con una firma elettronica avanzata basata sul proprio "
        "certificato qualificato."
    ),
    page="{title} - pagina {number} di {total}",
    document_title="Contratto {session}",
)

RO = ContractText(
    title="CONTRACT PENTRU UN CERTIFICAT CALIFICAT DE SEMNĂTURĂ ELECTRONICĂ",
    between="Între {provider} (Furnizorul) și Client:",
    labels=(
        "Prenume",
        "Nume",
        "Data nașterii",
        "Cetățenie",
        "Act de identitate",
        "E-mail",
        "Telefon mobil",
        "Serie certificat",
        "Identificare",
    ),
    conditions="CONDIȚIILE SERVICIULUI",
    object_qscd=(
        "1. Obiect. Furnizorul emite Clientului un certificat calificat pentru semnături "
        "electronice (Regulamentul (UE) nr. 910/2014, eIDAS), a cărui cheie privată Furnizorul "
        "o păstrează în numele Clientului într-un dispozitiv calificat de creare a semnăturii, "
        "și pe care numai Clientul o poate folosi, cu PIN-ul de semnătură și un cod unic "
        "trimis pe telefonul mobil pentru fiecare semnătură. Semnăturile făcute astfel sunt "
        "semnături electronice calificate."
    ),
    object_no_qscd=(
        "1. Obiect. Furnizorul emite Clientului un certificat calificat pentru semnături "
        "electronice (Regulamentul (UE) nr. 910/2014, eIDAS), a cărui cheie privată Furnizorul "
        "o păstrează în numele Clientului într-un modul criptografic care NU este un dispozitiv "
        "calificat certificat de creare a semnăturii, și pe care numai Clientul o poate "
        "folosi, cu PIN-ul de semnătură și un cod unic trimis pe telefonul mobil pentru "
        "fiecare semnătură. Semnăturile făcute astfel sunt semnături electronice avansate "
        "bazate pe un certificat calificat, nu semnături electronice calificate."
    ),
    clauses=(
        "2. Identificare. Clientul a fost identificat printr-un apel video în direct cu un "
        "operator al Furnizorului, înregistrat și păstrat ca probă, la data de mai jos. "
        "Clientul declară că datele din acest contract sunt adevărate și că actul de "
        "identitate prezentat îi aparține.",
        "3. PIN-ul de semnătură și codurile. Clientul păstrează secret PIN-ul de semnătură, nu "
        "îl notează lângă telefon și nu comunică nimănui codurile unice, pe care Furnizorul nu "
        "le va cere niciodată. Trei PIN-uri greșite blochează cheia; PUK-ul primit la emitere "
        "o deblochează.",
        "4. Valabilitate și revocare. Certificatul este valabil trei ani, dacă nu este revocat. "
        "Clientul cere imediat revocarea dacă bănuiește că altcineva îi cunoaște PIN-ul sau îi "
        "are telefonul. Un certificat revocat nu mai poate fi folosit.",
        "5. Date personale. Furnizorul prelucrează datele personale ale Clientului pentru a-l "
        "identifica, pentru a emite și gestiona certificatul și pentru a păstra probele pe "
        "perioada cerută de lege (douăzeci de ani pentru certificatele calificate, CAD "
        "italian). Clientul are drepturile prevăzute de articolele 15-22 GDPR, în limitele "
        "acestor obligații.",
        "6. Probe. Clientul este de acord ca înregistrarea identificării, verificările "
        "efectuate, evenimentele codurilor unice (niciodată codurile) și acest contract semnat "
        "să fie păstrate ca probă a identificării și a acestui acord.",
        "7. Legea aplicabilă și jurisdicția. Acest contract este guvernat de legea italiană. "
        "Instanța consumatorului este competentă pentru orice litigiu.",
    ),
    date="Data",
    signed_qscd="Semnat de Client cu semnătura sa electronică calificată.",
    signed_no_qscd=(
        "Semnat de Client cu o semnătură electronică avansată bazată pe certificatul său calificat."
    ),
    page="{title} - pagina {number} din {total}",
    document_title="Contract {session}",
)

PL = ContractText(
    title="UMOWA O KWALIFIKOWANY CERTYFIKAT PODPISU ELEKTRONICZNEGO",
    between="Zawarta między {provider} (Dostawcą) a Klientem:",
    labels=(
        "Imiona",
        "Nazwisko",
        "Data urodzenia",
        "Obywatelstwo",
        "Dokument tożsamości",
        "E-mail",
        "Telefon komórkowy",
        "Numer certyfikatu",
        "Identyfikacja",
    ),
    conditions="WARUNKI USŁUGI",
    object_qscd=(
        "1. Przedmiot. Dostawca wydaje Klientowi kwalifikowany certyfikat podpisu "
        "elektronicznego (rozporządzenie (UE) nr 910/2014, eIDAS), którego klucz prywatny "
        "Dostawca przechowuje w imieniu Klienta w kwalifikowanym urządzeniu do składania "
        "podpisu, i którego tylko Klient może użyć, podając PIN do podpisu i jednorazowy kod "
        "wysłany na jego telefon przy każdym podpisie. Tak złożone podpisy są kwalifikowanymi "
        "podpisami elektronicznymi."
    ),
    object_no_qscd=(
        "1. Przedmiot. Dostawca wydaje Klientowi kwalifikowany certyfikat podpisu "
        "elektronicznego (rozporządzenie (UE) nr 910/2014, eIDAS), którego klucz prywatny "
        "Dostawca przechowuje w imieniu Klienta w module kryptograficznym, który NIE jest "
        "certyfikowanym kwalifikowanym urządzeniem do składania podpisu, i którego tylko "
        "Klient może użyć, podając PIN do podpisu i jednorazowy kod wysłany na jego telefon "
        "przy każdym podpisie. Tak złożone podpisy są zaawansowanymi podpisami "
        "elektronicznymi opartymi na certyfikacie kwalifikowanym, a nie kwalifikowanymi "
        "podpisami elektronicznymi."
    ),
    clauses=(
        "2. Identyfikacja. Klient został zidentyfikowany podczas rozmowy wideo na żywo z "
        "operatorem Dostawcy, nagranej i przechowywanej jako dowód, w dniu podanym poniżej. "
        "Klient oświadcza, że dane w tej umowie są prawdziwe, a okazany dokument tożsamości "
        "należy do niego.",
        "3. PIN do podpisu i kody. Klient zachowuje PIN do podpisu w tajemnicy, nigdy nie "
        "zapisuje go przy telefonie i nikomu nie podaje kodów jednorazowych, o które Dostawca "
        "nigdy nie poprosi. Trzy błędne PIN-y blokują klucz; PUK przekazany przy wydaniu go "
        "odblokowuje.",
        "4. Ważność i unieważnienie. Certyfikat jest ważny trzy lata, chyba że zostanie "
        "unieważniony. Klient niezwłocznie żąda unieważnienia, jeśli podejrzewa, że ktoś inny "
        "zna jego PIN lub ma jego telefon. Unieważnionego certyfikatu nie można już użyć.",
        "5. Dane osobowe. Dostawca przetwarza dane osobowe Klienta, aby go zidentyfikować, "
        "wydać certyfikat i nim zarządzać oraz przechowywać dowody przez okres wymagany "
        "prawem (dwadzieścia lat dla certyfikatów kwalifikowanych, włoski CAD). Klientowi "
        "przysługują prawa z art. 15-22 RODO w granicach tych obowiązków.",
        "6. Dowody. Klient zgadza się, aby nagranie identyfikacji, wykonane sprawdzenia, "
        "zdarzenia dotyczące kodów jednorazowych (nigdy same kody) oraz ta podpisana umowa "
        "były przechowywane jako dowód identyfikacji i tej umowy.",
        "7. Prawo i jurysdykcja. Umowa podlega prawu włoskiemu. Do rozstrzygania sporów "
        "właściwy jest sąd konsumenta.",
    ),
    date="Data",
    signed_qscd="Podpisano przez Klienta jego kwalifikowanym podpisem elektronicznym.",
    signed_no_qscd=(
        "Podpisano przez Klienta zaawansowanym podpisem elektronicznym opartym na jego "
        "certyfikacie kwalifikowanym."
    ),
    page="{title} - strona {number} z {total}",
    document_title="Umowa {session}",
)

TEXTS = {"en": EN, "it": IT, "ro": RO, "pl": PL}


def text_for(language: str) -> ContractText:
    """The contract's words in ``language``; English for any other."""
    return TEXTS.get(language, EN)
