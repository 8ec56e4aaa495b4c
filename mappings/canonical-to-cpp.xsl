<?xml version="1.0" encoding="UTF-8"?>
<!--
  Canonical invoice (schemas/canonical-invoice.xsd) → Chorus Pro "CPP Facture Mixte"
  (CPPFactureMixte), E2 mixed flow IN_DP_E2_CPP_FACTURE_MIN, interface FSO1113A
  (FSO1110A: the same with invoice lines). Checked by schemas/cpp-facture-mixte.xsd;
  sources, certainty and choices in docs/cpp-facture-mixte.md.

  The structure is the public sample's (../shared/corpus/examples/chorus-pro/mixte/):
  Enveloppe (DtPrd, IdFlx, Recepteur, Emetteur), then one CPPFactureMixteUnitaire with
  Fournisseur, Debiteur, DonneesFacture and one PJ per attached document, the invoice
  PDF (role="invoice", TypePJ 01) first. An optional canonical element that is absent
  produces no element. Amounts arrive computed and rounded: this stylesheet copies them
  and does no arithmetic.

  What the format has no place for is left out: addresses, VAT identifiers, the due
  date, the preceding invoice's date, the VAT category and exemption reasons.
-->
<xsl:stylesheet version="3.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:map="http://www.w3.org/2005/xpath-functions/map"
    xmlns:c="urn:chorus-gateway:canonical-invoice:1"
    xpath-default-namespace="urn:chorus-gateway:canonical-invoice:1"
    exclude-result-prefixes="xs map c">

  <xsl:output method="xml" encoding="UTF-8" indent="yes"/>

  <!-- The Chorus Pro interface: its rendering stylesheet is named in the output, and
       FSO1110A (unlike FSO1113A) requires the invoice lines. -->
  <xsl:param name="interface-code" as="xs:string" select="'FSO1113A'"/>
  <!-- DtPrd, the flow's production date (YYYY-MM-DD). Empty: the invoice issue date,
       so that the same invoice always maps to the same bytes. -->
  <xsl:param name="production-date" as="xs:string" select="''"/>
  <!-- IdFlx, the flow id. Not known yet when one invoice is mapped. Empty: the invoice
       number (BT-1), which identifies this one-invoice document and is unique per
       supplier; the packaging stage passes the real flow id when it has one. -->
  <xsl:param name="flow-id" as="xs:string" select="''"/>
  <!-- Partenaires/Emetteur/Id: the sender's Chorus Pro EDI partner code (3 to 8
       characters, AAA999). No default can be right: empty stops the mapping with
       error CPP-EMETTEUR rather than send a flow under somebody else's code. -->
  <xsl:param name="emetteur-id" as="xs:string" select="''"/>
  <!-- Partenaires/Recepteur/Id: CPP001 is the code Chorus Pro names itself with as the
       Emetteur of the flows it sends (CPPFacturePivot / CPPStatut samples). -->
  <xsl:param name="recepteur-id" as="xs:string" select="'CPP001'"/>
  <!-- xsi:noNamespaceSchemaLocation, as the public sample writes it. Empty: none. -->
  <xsl:param name="schema-location" as="xs:string" select="'CPPFactureMixte_V1.14.xsd'"/>
  <!-- Overrides of the payment means table below: "UNTDID=CPP" pairs separated by
       spaces or commas, e.g. "58=30 1=01"; "57=" removes a code. -->
  <xsl:param name="payment-means-map" as="xs:string" select="''"/>

  <!-- UNTDID 4461 payment means (BT-81) → ModePaiement/Code. The CPPFactureMixte code
       list is not public: these are the codes AIFE's CPPFacturePivot (V1_20…V2_02)
       enumerates, themselves UNTDID 4461 codes (10 cash, 20 cheque, 30 credit transfer,
       31 debit transfer, 42 payment to bank account, 48 bank card, 49 direct debit,
       97 clearing between partners), plus the SEPA specialisations of two of them
       (58 SEPA credit transfer → 30, 59 SEPA direct debit → 49). Any other code writes
       no ModePaiement (and an XML comment saying so) rather than a guessed one. -->
  <xsl:variable name="payment-means-table" as="map(xs:string, xs:string)" select="map {
      '10': '10', '20': '20', '30': '30', '31': '31', '42': '42', '48': '48', '49': '49', '97': '97',
      '58': '30', '59': '49' }"/>

  <xsl:variable name="payment-means" as="map(xs:string, xs:string)">
    <xsl:map>
      <xsl:variable name="overrides" as="map(xs:string, xs:string)*">
        <xsl:for-each select="tokenize(normalize-space(translate($payment-means-map, ',', ' ')), ' ')[. ne '']">
          <xsl:if test="not(matches(., '^[^=]+=[0-9]{0,2}$'))">
            <xsl:sequence select="error(QName('urn:chorus-gateway:mapping', 'CPP-PAYMENT-MAP'),
                'payment-means-map: ' || . || ' is not UNTDID=CPP (two digits or nothing)')"/>
          </xsl:if>
          <xsl:sequence select="map { substring-before(., '='): substring-after(., '=') }"/>
        </xsl:for-each>
      </xsl:variable>
      <xsl:variable name="merged" select="map:merge(($overrides, $payment-means-table), map { 'duplicates': 'use-first' })"/>
      <xsl:for-each select="map:keys($merged)[map:get($merged, .) ne '']">
        <xsl:map-entry key="." select="map:get($merged, .)"/>
      </xsl:for-each>
    </xsl:map>
  </xsl:variable>

  <xsl:template match="/">
    <xsl:if test="$emetteur-id eq ''">
      <xsl:sequence select="error(QName('urn:chorus-gateway:mapping', 'CPP-EMETTEUR'),
          'the stylesheet parameter emetteur-id (the sender''s Chorus Pro EDI partner code, 3 to 8 characters) is required')"/>
    </xsl:if>
    <xsl:processing-instruction name="xml-stylesheet"
        select="concat('type=&quot;text/xsl&quot; href=&quot;', $interface-code, '.xsl&quot;')"/>
    <xsl:apply-templates select="Invoice"/>
  </xsl:template>

  <xsl:template match="Invoice">
    <CPPFactureMixte>
      <xsl:if test="$schema-location ne ''">
        <xsl:attribute name="xsi:noNamespaceSchemaLocation" namespace="http://www.w3.org/2001/XMLSchema-instance"
            select="$schema-location"/>
      </xsl:if>
      <Enveloppe>
        <EnveloppeUnitaire NumOrdre="1">
          <Parametres>
            <ParametreIndiv NumOrdre="0001">
              <Code>DtPrd</Code>
              <Valeurparametre><xsl:value-of select="if ($production-date ne '') then $production-date else IssueDate"/></Valeurparametre>
            </ParametreIndiv>
            <ParametreIndiv NumOrdre="0002">
              <Code>IdFlx</Code>
              <Valeurparametre><xsl:value-of select="if ($flow-id ne '') then $flow-id else InvoiceNumber"/></Valeurparametre>
            </ParametreIndiv>
          </Parametres>
          <Partenaires>
            <Recepteur><Id><xsl:value-of select="$recepteur-id"/></Id></Recepteur>
            <Emetteur><Id><xsl:value-of select="$emetteur-id"/></Id></Emetteur>
          </Partenaires>
        </EnveloppeUnitaire>
      </Enveloppe>
      <CPPFactures Compteur="1">
        <CPPFactureMixteUnitaire NumOrdre="1">
          <xsl:apply-templates select="Seller"/>
          <xsl:apply-templates select="Buyer"/>
          <xsl:call-template name="donnees-facture"/>
          <xsl:for-each select="AdditionalSupportingDocument[@role eq 'invoice'][AttachedDocument],
                                AdditionalSupportingDocument[@role ne 'invoice'][AttachedDocument]">
            <xsl:apply-templates select=".">
              <xsl:with-param name="number" select="position()"/>
            </xsl:apply-templates>
          </xsl:for-each>
        </CPPFactureMixteUnitaire>
      </CPPFactures>
    </CPPFactureMixte>
  </xsl:template>

  <!-- The canonical model requires a SIRET for the seller: TypeIdentifiant 1. -->
  <xsl:template match="Seller">
    <Fournisseur>
      <TypeIdentifiant>1</TypeIdentifiant>
      <Identifiant><xsl:value-of select="Siret"/></Identifiant>
      <RaisonSociale><xsl:value-of select="Name"/></RaisonSociale>
      <CodePays><xsl:value-of select="PostalAddress/CountryCode"/></CodePays>
      <xsl:for-each select="../PaymentInstructions/PaymentAccountIdentifier">
        <ReferenceBancaire Type="IBAN"><Compte><xsl:value-of select="."/></Compte></ReferenceBancaire>
      </xsl:for-each>
    </Fournisseur>
  </xsl:template>

  <xsl:template match="Buyer">
    <Debiteur>
      <TypeIdentifiant>1</TypeIdentifiant>
      <Identifiant><xsl:value-of select="Siret"/></Identifiant>
      <Nom><xsl:value-of select="Name"/></Nom>
      <xsl:for-each select="../BuyerReference"><CodeService><xsl:value-of select="."/></CodeService></xsl:for-each>
    </Debiteur>
  </xsl:template>

  <xsl:template name="donnees-facture">
    <DonneesFacture>
      <Id><xsl:value-of select="InvoiceNumber"/></Id>
      <xsl:for-each select="PrecedingInvoiceReference/PrecedingInvoiceNumber">
        <IdFactureOrigine><xsl:value-of select="."/></IdFactureOrigine>
      </xsl:for-each>
      <!-- Copied as it is: the CPP formats know 380 and 381 only, so a 384 or 386 is
           refused by the schema instead of being silently re-typed. -->
      <Type><xsl:value-of select="InvoiceTypeCode"/></Type>
      <Cadre><xsl:value-of select="BusinessProcessType"/></Cadre>
      <DateEmissionFacture><xsl:value-of select="IssueDate"/></DateEmissionFacture>
      <!-- A credit note carries no payment means (DOMAIN.md §3). -->
      <xsl:if test="InvoiceTypeCode ne '381'">
        <xsl:apply-templates select="PaymentInstructions"/>
      </xsl:if>
      <Devise><xsl:value-of select="CurrencyCode"/></Devise>
      <xsl:apply-templates select="DocumentTotals"/>
      <xsl:if test="VatBreakdown">
        <TVAS><xsl:apply-templates select="VatBreakdown"/></TVAS>
      </xsl:if>
      <xsl:if test="ContractReference or PurchaseOrderReference">
        <Engagement>
          <xsl:for-each select="ContractReference"><NumeroMarche><xsl:value-of select="."/></NumeroMarche></xsl:for-each>
          <xsl:for-each select="PurchaseOrderReference"><NumeroEngagement><xsl:value-of select="."/></NumeroEngagement></xsl:for-each>
        </Engagement>
      </xsl:if>
      <xsl:if test="$interface-code eq 'FSO1110A'">
        <Lignes><xsl:apply-templates select="InvoiceLine"/></Lignes>
      </xsl:if>
    </DonneesFacture>
  </xsl:template>

  <xsl:template match="PaymentInstructions">
    <xsl:variable name="untdid" select="string(PaymentMeansTypeCode)"/>
    <xsl:choose>
      <xsl:when test="map:contains($payment-means, $untdid)">
        <ModePaiement><Code><xsl:value-of select="$payment-means($untdid)"/></Code></ModePaiement>
      </xsl:when>
      <xsl:otherwise>
        <xsl:comment select="'ModePaiement left out: UNTDID 4461 code ' || $untdid || ' has no known CPP code'"/>
      </xsl:otherwise>
    </xsl:choose>
  </xsl:template>

  <xsl:template match="DocumentTotals">
    <Montants>
      <MontantHT><xsl:value-of select="InvoiceTotalAmountWithoutVat"/></MontantHT>
      <MontantTTC><xsl:value-of select="InvoiceTotalAmountWithVat"/></MontantTTC>
      <MontantNetAPayer><xsl:value-of select="AmountDueForPayment"/></MontantNetAPayer>
    </Montants>
  </xsl:template>

  <xsl:template match="VatBreakdown">
    <TVA>
      <Taux><xsl:value-of select="VatCategoryRate"/></Taux>
      <BaseHt><xsl:value-of select="VatCategoryTaxableAmount"/></BaseHt>
      <MontantTVA><xsl:value-of select="VatCategoryTaxAmount"/></MontantTVA>
    </TVA>
  </xsl:template>

  <!-- FSO1110A only. ReferenceProduit carries the item name (BT-153), the one text the
       canonical line has; category O has no rate (EN 16931 BR-O-05), so no TauxTVA. -->
  <xsl:template match="InvoiceLine">
    <Ligne NumOrdre="{position()}">
      <ReferenceProduit><xsl:value-of select="ItemName"/></ReferenceProduit>
      <PrixUnitaire><xsl:value-of select="ItemNetPrice"/></PrixUnitaire>
      <Quantite><xsl:value-of select="InvoicedQuantity"/></Quantite>
      <MontantHT><xsl:value-of select="InvoiceLineNetAmount"/></MontantHT>
      <xsl:if test="InvoicedItemVatCategoryCode ne 'O'">
        <TauxTVA><xsl:value-of select="InvoicedItemVatRate"/></TauxTVA>
      </xsl:if>
    </Ligne>
  </xsl:template>

  <!-- One attachment: the invoice PDF (TypePJ 01) or a supporting document (02). The
       file name is BT-125's filename, else BT-122; base64 is written on one line. -->
  <xsl:template match="AdditionalSupportingDocument">
    <xsl:param name="number" as="xs:integer"/>
    <PJ NumOrdre="{$number}">
      <Contenu><xsl:value-of select="replace(AttachedDocument, '\s+', '')"/></Contenu>
      <NomPJ><xsl:value-of select="(AttachedDocument/@filename, SupportingDocumentReference)[1]"/></NomPJ>
      <TypePJ><xsl:value-of select="if (@role eq 'invoice') then '01' else '02'"/></TypePJ>
      <MimeTypePJ><xsl:value-of select="AttachedDocument/@mimeCode"/></MimeTypePJ>
    </PJ>
  </xsl:template>
</xsl:stylesheet>
